"""shapekit.train"""
