"""shapekit.nn: landmark models built by name, heads, and losses (torch).

``create_model(name, n_points=68, in_channels=3, input_size=224, head="regression")``
returns a model mapping images ``(B, C, S, S)`` in [0, 1] to coordinates ``(B, L, 2)``
in normalised units (-1 and +1 are the outer image edges).
"""

from shapekit.nn.registry import create_model, list_models, model_info, register_model  # noqa: F401
