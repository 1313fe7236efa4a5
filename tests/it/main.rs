mod control;
mod targets;
