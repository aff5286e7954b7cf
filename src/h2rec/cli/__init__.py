"""Command-line interface (typer): parses arguments, calls the library, prints results."""
