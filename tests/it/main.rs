//! Integration tests: one binary, one module per area.

mod control;
mod dns;
mod export;
mod golden;
mod helper;
mod history;
mod lab;
mod layers;
mod locate;
mod options;
mod pcap;
mod support;
mod targets;
mod web;
mod web_control;
mod wire;
mod workflows;
