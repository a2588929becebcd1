"""Components written outside the package, joined through a gin ``import`` line (docs/extending.md)."""
