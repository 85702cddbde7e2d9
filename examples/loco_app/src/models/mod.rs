pub mod _entities;
pub mod notes;
pub mod users;
