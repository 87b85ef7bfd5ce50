"""shapekit.shape"""
