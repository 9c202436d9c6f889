"""Command line: `judge-core score | demo | rank | quantize`. One module per subcommand."""
