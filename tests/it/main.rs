//! Integration tests: one binary, one module per area.

mod control;
mod dns;
mod support;
mod targets;
