"""pytest collects the doctests of the pages (docs/**/*.md), not Sphinx's configuration, extensions or output."""
collect_ignore = ["conf.py", "_ext", "_build", "tutorials", "api/generated"]
