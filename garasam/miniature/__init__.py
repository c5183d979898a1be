"""The miniature GaRA-SAM study: the paper's experiment on the bundled tiny SAM and synthetic scene
families, with seeds, bootstrap intervals and pre-registered claims (docs/miniature.md)."""
