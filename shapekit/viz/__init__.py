"""shapekit.viz: every plot, one module per topic."""
