mod targets;
