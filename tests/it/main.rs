//! Integration tests: one binary, one module per area.

mod dns;
mod support;
mod targets;
mod workflows;
