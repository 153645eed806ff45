"""The `polingo` command: one module per subcommand, each a thin layer over a library function."""
