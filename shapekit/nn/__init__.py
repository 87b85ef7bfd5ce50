"""shapekit.nn"""
