"""One module per noun: parse options, call the core, print the result."""
