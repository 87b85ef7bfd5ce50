"""The estimator contract of shapekit's models: scikit-learn's, in one place.

A model class derives from :class:`Estimator` and

* stores every constructor argument, unchanged, under its own name (no conversion in
  ``__init__``: values are converted where they are used), so that
  :meth:`Estimator.get_params` and :meth:`Estimator.set_params` follow from the
  constructor's signature and ``sklearn.base.clone`` gives an unfitted copy with the
  same parameters;
* lists its parameter checks in one table, ``_constraints`` (parameter name ->
  :class:`Constraint`), and the checks that tie several parameters together in
  :meth:`Estimator._check_relations`; :meth:`Estimator._validate` runs both and raises
  :class:`~shapekit.errors.ShapekitError` naming the parameter;
* names the attribute that only a fitted model has in ``_fitted_attribute``, which
  :meth:`Estimator._check_fitted` (and scikit-learn's ``check_is_fitted``) look at.

Parameters go to model files as JSON (:meth:`Estimator.json_params`) and come back with
:meth:`Estimator.from_json_params`, which turns JSON's lists back into the tuples the
constructors take.
"""

from __future__ import annotations

import inspect
import math
from numbers import Integral, Real

import numpy as np

from shapekit.errors import ShapekitError

__all__ = ["Constraint", "Estimator", "integer", "integers", "number", "one_of", "factors", "optional"]


class Constraint:
    """A parameter check: ``check(value) -> bool`` and what it expects, in words.

    A check that raises ``TypeError`` or ``ValueError`` fails (a string where a number
    is expected is a bad value, not a crash)."""

    def __init__(self, check, expected):
        self.check = check
        self.expected = expected

    def __call__(self, value):
        try:
            return bool(self.check(value))
        except (TypeError, ValueError):
            return False


def _is_int(v):
    return not isinstance(v, (bool, np.bool_)) and isinstance(v, (Integral, Real)) and float(v).is_integer()


def _integer_words(low, plural=False):
    if low is None:
        return "integers" if plural else "an integer"
    if low == 1:
        return "positive integers" if plural else "a positive integer"
    return f"{'integers' if plural else 'an integer'} >= {low}"


def integer(low=None):
    """An integer (``int`` or an integral float) of at least ``low``."""
    return Constraint(lambda v: _is_int(v) and (low is None or v >= low), _integer_words(low))


def integers(low=None, note=""):
    """One integer of at least ``low`` or a sequence of them (``note``: words added to the message)."""
    one = integer(low)
    return Constraint(lambda v: np.ndim(v) <= 1 and all(one(x) for x in np.atleast_1d(v)),
                      _integer_words(low, plural=True) + (f" {note}" if note else ""))


def number(low=None, high=None, low_open=False, high_open=False, finite=True):
    """A real number in the interval given by ``low``, ``high`` (open ends where told)."""
    def check(v):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (Real, np.floating, np.integer)):
            return False
        v = float(v)
        if finite and not math.isfinite(v):
            return False
        if low is not None and (v <= low if low_open else v < low):
            return False
        return high is None or (v < high if high_open else v <= high)

    if low is not None and high is not None:
        words = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        words = f"a number {'>' if low_open else '>='} {low}"
    elif high is not None:
        words = f"a number {'<' if high_open else '<='} {high}"
    else:
        words = "a finite number"
    return Constraint(check, words)


def one_of(*values):
    """One of the strings ``values``."""
    return Constraint(lambda v: isinstance(v, str) and v in values, "one of " + ", ".join(repr(x) for x in values))


def factors(positive=True, empty=True):
    """One number or a sequence of finite numbers (``positive``: each > 0; ``empty``: none allowed)."""
    def check(v):
        a = np.atleast_1d(np.asarray(v, dtype=np.float64))
        if a.ndim != 1 or (a.size == 0 and not empty):
            return False
        return bool(np.all(np.isfinite(a)) and (not positive or np.all(a > 0)))

    words = "positive factors" if positive else "finite numbers"
    return Constraint(check, words + ("" if empty else " (at least one)"))


def optional(constraint):
    """None, or what ``constraint`` accepts."""
    return Constraint(lambda v: v is None or constraint(v), f"{constraint.expected} or None")


class Estimator:
    """Base of shapekit's models: the parameter contract (see the module docstring)."""

    #: parameter name -> :class:`Constraint`; parameters not listed are not checked
    _constraints: dict = {}
    #: the attribute that only a fitted model has ("": nothing to learn, always ready)
    _fitted_attribute: str = ""
    #: what to call to fit one, for the "not fitted" message
    _fit_hint: str = "fit() or load()"

    @classmethod
    def _param_names(cls):
        """The constructor's parameter names, in the signature's order."""
        names = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            names.append(p.name)
        return tuple(names)

    def get_params(self, deep=True):
        """Return the constructor parameters as a dict (``deep``: also those of parameters
        that are estimators themselves, as ``name__param``)."""
        out = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor parameters (``name__param`` for a parameter's own; fitted state
        is kept, and what a parameter changes takes effect where it is next used); return self."""
        known = self._param_names()
        nested = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in known:
                raise ShapekitError(f"unknown {type(self).__name__} parameter {name!r}; known: {', '.join(known)}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def _validate(self):
        """Raise :class:`ShapekitError` naming the first parameter that breaks its constraint."""
        for name, constraint in self._constraints.items():
            value = getattr(self, name)
            if not constraint(value):
                raise ShapekitError(f"{name}: expected {constraint.expected}, got {value!r}")
        self._check_relations()

    def _check_relations(self):
        """Checks that tie parameters together (after each passed its own); none by default."""

    def __sklearn_is_fitted__(self):
        return not self._fitted_attribute or hasattr(self, self._fitted_attribute)

    def _check_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise ShapekitError(f"this {type(self).__name__} is not fitted: call {self._fit_hint} first")

    def json_params(self):
        """Return :meth:`get_params` (shallow) with NumPy scalars as Python numbers: for a JSON header."""
        return {k: _plain(v) for k, v in self.get_params(deep=False).items()}

    @classmethod
    def from_json_params(cls, params):
        """Return constructor keywords from :meth:`json_params` read back from JSON (lists
        become tuples; names the constructor no longer takes are dropped)."""
        known = cls._param_names()
        return {k: _tuples(v) for k, v in params.items() if k in known}


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v
