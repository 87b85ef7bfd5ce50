"""shapekit.asm"""
