mod lab;
mod targets;
