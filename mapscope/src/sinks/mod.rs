//! Where events go besides the terminal. Each sink is one module with its tests beside it.

pub mod http;
pub mod spool;
