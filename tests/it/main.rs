mod targets;
mod web;
