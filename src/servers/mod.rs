//! Loopback servers for the tests and the censor lab.

pub mod web;
