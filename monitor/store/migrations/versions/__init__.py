"""Migration revisions; a package only so that they are installed with infermon."""
