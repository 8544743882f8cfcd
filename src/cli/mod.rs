//! The subcommands other than `serve`: what they do, apart from argument parsing.

pub mod flowtest;
pub mod messages;
