//! Sessions: the model, how it is sealed into cookies, and where it is stored.

mod model;

pub use model::Session;
