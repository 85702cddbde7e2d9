pub mod auth;

pub mod notes;
