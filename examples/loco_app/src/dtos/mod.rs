pub mod common;

pub mod notes;
