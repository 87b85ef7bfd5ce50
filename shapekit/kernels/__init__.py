"""shapekit.kernels"""
