//! Request bodies -> values: the input document a flow reads, and XML <-> JSON.

pub mod input;
pub mod xml;
