"""shapekit.data"""
