mod audit;
mod auth;
mod prepare_data;
