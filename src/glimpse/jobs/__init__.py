"""Background work: the task runner and import flows."""
