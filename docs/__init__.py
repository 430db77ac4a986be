"""The documentation site's pages (built by mkdocs.yml) and the script that writes the CLI reference."""
