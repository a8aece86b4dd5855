//! A Discord gateway proxy.

#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod cache;
pub mod intents;
pub mod log;
