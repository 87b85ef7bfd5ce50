"""The shapekit command line (installed as the package ``shapekit_cli``)."""
