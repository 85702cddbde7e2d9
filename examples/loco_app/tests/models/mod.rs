mod users;

mod notes;
