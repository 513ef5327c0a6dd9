"""Reading an i1 reference config file (`jax/configs/**.py`) without running it.

The reference configs are Python files whose `get_config()` builds an `ml_collections.ConfigDict`
with plain assignments. i1lab never imports or executes such a file: it parses it with :mod:`ast`
and evaluates a small, closed subset of Python itself. What is evaluated (docs/import-i1.md says the
same):

- at module level: `import` / `from ... import` statements (recorded as names, never imported),
  string expressions (docstrings) and one `def get_config():` (parameters only with literal defaults);
- in `get_config`'s body: string expressions; assignments to local names and to attributes or string
  subscripts of the config (`config.a.b = ...`, `config["a"] = ...`), also augmented (`+=`, ...);
  one final `return config`;
- expressions: literals (numbers, strings, True/False/None), lists, tuples, dicts, local names,
  reading attributes / subscripts of values built so far, unary `+ - not`, binary
  `+ - * / // % **`, comparisons, `and`/`or`, `x if c else y`, list comprehensions and generator
  expressions over lists built so far, and calls of these callables only: `dict`, `ConfigDict`
  (`ml_collections.ConfigDict`, `mlc.ConfigDict`, or a `from ml_collections import ConfigDict`
  name), `float`, `int`, `str`, `bool`, `len`, `sum`, `min`, `max`, `abs`, `round`, `list`, `tuple`,
  `range`, `zip`, `enumerate`, `sorted`.

Anything else (another call, a loop, an `if` statement, a lambda, an f-string, attribute access on
something that is not a value built here, ...) is an error naming the file and line. Sizes are
bounded, so a hostile file cannot exhaust memory or time either: at most `MAX_FILE_BYTES` of UTF-8
source, expressions nested `MAX_EXPR_DEPTH` deep, values (lists, dicts, configs) nested `MAX_VALUE_DEPTH`
deep, 100,000 list elements and 100,000-character strings in total, `MAX_STEPS` evaluation steps
(comprehension iterations included), integers of at most `MAX_INT_BITS` bits, exponents up to 64,
`round()` to at most 64 digits, and `MAX_VISITS` elements visited in all by the operations that look
inside values (comparisons, `str()`, `sorted()`, ...; a value used twice counts twice), so that values
built of shared parts (``x = [x, x]`` repeated) cannot make a small file expand exponentially.

The result is the config as a flat mapping of dotted knob names (`model_kwargs.use_adaln`,
`transport.prediction`, `input.data`, ...) to their values and the line that set them.
"""

from __future__ import annotations

import ast
import math
import operator
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i1lab.errors import I1labError
from i1lab.textfile import read_utf8

#: Bounds on what a config may build (module docstring).
MAX_ELEMENTS = 100_000
MAX_EXPONENT = 64
MAX_FILE_BYTES = 1 << 20
MAX_EXPR_DEPTH = 100
MAX_VALUE_DEPTH = 32
MAX_STEPS = 100_000
MAX_INT_BITS = 256
MAX_VISITS = 100_000
DEEP = f"a value nested deeper than {MAX_VALUE_DEPTH} levels"


class ConfigReadError(I1labError):
    """A reference config uses something i1lab does not evaluate (one line: file:line: message)."""


class Node(dict[str, Any]):
    """A dict built by the config (`dict(...)`, `{...}`, `ConfigDict(...)`), remembering the line that
    set each key."""

    def __init__(self, items: Iterable[tuple[str, Any, int]] = ()) -> None:
        super().__init__()
        self.lines: dict[str, int] = {}
        for key, value, line in items:
            self.put(key, value, line)

    def put(self, key: str, value: Any, line: int) -> None:
        self[key] = value
        self.lines[key] = line


@dataclass(frozen=True)
class Knob:
    """One leaf of a reference config: its dotted name, value and the line that set it."""

    name: str
    value: Any
    line: int


@dataclass(frozen=True)
class ReferenceConfig:
    """A parsed reference config: the file and its knobs by dotted name (in file order)."""

    path: Path
    knobs: dict[str, Knob]

    def where(self, knob: str) -> str:
        """`file:line` of a knob (the file alone when it is not set)."""
        k = self.knobs.get(knob)
        return f"{self.path}:{k.line}" if k else str(self.path)


_BINOPS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_SIMPLE_CALLS: dict[str, Callable[..., Any]] = {
    "float": float,
    "int": int,
    "str": str,
    "bool": bool,
    "len": len,
    "sum": sum,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "list": list,
    "tuple": tuple,
    "range": lambda *a: list(range(*a)),
    "zip": lambda *a: list(zip(*a, strict=False)),
    "enumerate": lambda *a: list(enumerate(*a)),
    "sorted": sorted,
}
_SCALARS = (int, float, str, bool, type(None))


class _Evaluator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.budget = MAX_ELEMENTS
        self.steps = MAX_STEPS
        self.visits = MAX_VISITS
        self.depth = 0
        self.configdict_names: set[str] = set()  # names that call ConfigDict
        self.module_aliases: set[str] = set()  # names bound to the ml_collections module

    # ------------------------------------------------------------------ errors and bounds
    def fail(self, node: ast.AST | None, message: str) -> ConfigReadError:
        line = getattr(node, "lineno", None)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigReadError(f"{where}: {message}")

    def step(self, node: ast.AST) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise self.fail(node, f"the config takes more than {MAX_STEPS} evaluation steps; not evaluated")

    def weigh(self, node: ast.AST, value: Any) -> None:
        """Visit ``value`` as an operation that looks inside it would, within the budget of visits and the
        bound on nesting (level by level, without recursion)."""
        try:
            self.visits = _weigh(value, self.visits)
        except _TooLarge as exc:
            large = f"the config's values expand to more than {MAX_VISITS} elements"
            raise self.fail(node, DEEP if exc.args[0] == "deep" else large) from None

    def spend(self, node: ast.AST, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
            raise self.fail(node, f"an integer of more than {MAX_INT_BITS} bits; not evaluated")
        if isinstance(value, list | tuple | str | dict):
            self.budget -= len(value)
            if self.budget < 0:
                raise self.fail(node, f"the config builds more than {MAX_ELEMENTS} elements; not evaluated")
        return value

    # ------------------------------------------------------------------ module level
    def module(self, tree: ast.Module) -> Node:
        func: ast.FunctionDef | None = None
        for stmt in tree.body:
            if isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.name == "ml_collections":
                        self.module_aliases.add(alias.asname or alias.name)
            elif isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    if stmt.module == "ml_collections" and alias.name == "ConfigDict":
                        self.configdict_names.add(alias.asname or alias.name)
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # docstring
            elif isinstance(stmt, ast.FunctionDef) and stmt.name == "get_config":
                if func is not None:
                    raise self.fail(stmt, "get_config is defined twice")
                func = stmt
            else:
                raise self.fail(
                    stmt, "only imports, docstrings and `def get_config()` are read at module level"
                )
        if func is None:
            raise self.fail(None, "no `def get_config():` found")
        return self.function(func)

    def function(self, func: ast.FunctionDef) -> Node:
        if func.decorator_list:
            raise self.fail(func, "get_config must not be decorated")
        args = func.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
            raise self.fail(func, "get_config may only take parameters with literal defaults")
        if len(args.defaults) != len(args.args):
            raise self.fail(func, "get_config may only take parameters with literal defaults")
        scope: dict[str, Any] = {}
        for arg, default in zip(args.args, args.defaults, strict=True):
            scope[arg.arg] = self.expr(default, {})
        returned: Any = None
        for i, stmt in enumerate(func.body):
            if isinstance(stmt, ast.Return):
                if i != len(func.body) - 1:
                    raise self.fail(stmt, "`return` must be the last statement")
                if stmt.value is None:
                    raise self.fail(stmt, "get_config must return the config")
                returned = self.expr(stmt.value, scope)
            else:
                self.statement(stmt, scope)
        if not isinstance(returned, Node):
            raise self.fail(func, "get_config must end with `return config` (a ConfigDict)")
        return returned

    # ------------------------------------------------------------------ statements
    def statement(self, stmt: ast.stmt, scope: dict[str, Any]) -> None:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            return  # a string used as a comment
        if isinstance(stmt, ast.Pass):
            return
        if isinstance(stmt, ast.Assign):
            value = self.expr(stmt.value, scope)
            for target in stmt.targets:
                self.assign(target, value, scope, stmt.lineno)
            return
        if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self.assign(stmt.target, self.expr(stmt.value, scope), scope, stmt.lineno)
            return
        if isinstance(stmt, ast.AugAssign):
            op = _BINOPS.get(type(stmt.op))
            if op is None:
                raise self.fail(stmt, f"operator {type(stmt.op).__name__} is not evaluated")
            current = self.expr(_as_load(stmt.target), scope)
            value = self.binop(stmt, op, current, self.expr(stmt.value, scope))
            self.assign(stmt.target, value, scope, stmt.lineno)
            return
        kind = type(stmt).__name__
        raise self.fail(stmt, f"statement `{kind}` is not evaluated (only assignments are read)")

    def assign(self, target: ast.expr, value: Any, scope: dict[str, Any], line: int) -> None:
        if isinstance(target, ast.Name):
            scope[target.id] = value
            return
        if isinstance(target, ast.Tuple | ast.List):
            items = list(value) if isinstance(value, list | tuple) else None
            if items is None or len(items) != len(target.elts):
                raise self.fail(target, "cannot unpack this value")
            for t, v in zip(target.elts, items, strict=True):
                self.assign(t, v, scope, line)
            return
        if isinstance(target, ast.Attribute):
            owner = self.expr(target.value, scope)
            if not isinstance(owner, Node):
                raise self.fail(target, "attributes can only be set on the config and its sub-configs")
            owner.put(target.attr, value, line)
            return
        if isinstance(target, ast.Subscript):
            owner = self.expr(target.value, scope)
            key = self.expr(target.slice, scope)
            if isinstance(owner, Node) and isinstance(key, str):
                owner.put(key, value, line)
                return
            raise self.fail(target, "only string keys of the config and its sub-configs can be set")
        raise self.fail(target, "this assignment target is not evaluated")

    # ------------------------------------------------------------------ expressions
    def expr(self, node: ast.expr, scope: dict[str, Any]) -> Any:
        method = getattr(self, f"e_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"expression `{type(node).__name__}` is not evaluated")
        self.step(node)
        if self.depth >= MAX_EXPR_DEPTH:
            raise self.fail(node, f"an expression nested deeper than {MAX_EXPR_DEPTH} levels")
        self.depth += 1
        try:
            return method(node, scope)
        finally:
            self.depth -= 1

    def e_Constant(self, node: ast.Constant, scope: dict[str, Any]) -> Any:
        if not isinstance(node.value, _SCALARS):
            raise self.fail(node, f"constant of type {type(node.value).__name__} is not evaluated")
        return self.spend(node, node.value)

    def e_Name(self, node: ast.Name, scope: dict[str, Any]) -> Any:
        if node.id in scope:
            return scope[node.id]
        raise self.fail(node, f"name `{node.id}` is not defined here (only local assignments are read)")

    def e_List(self, node: ast.List, scope: dict[str, Any]) -> Any:
        return self.spend(node, [self.expr(e, scope) for e in node.elts])

    def e_Tuple(self, node: ast.Tuple, scope: dict[str, Any]) -> Any:
        return self.spend(node, tuple(self.expr(e, scope) for e in node.elts))

    def e_Dict(self, node: ast.Dict, scope: dict[str, Any]) -> Any:
        out = Node()
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                raise self.fail(node, "`**` in a dict is not evaluated")
            key = self.expr(k, scope)
            if not isinstance(key, str):
                raise self.fail(k, "dict keys must be strings")
            out.put(key, self.expr(v, scope), getattr(v, "lineno", node.lineno))
        return self.spend(node, out)

    def e_Attribute(self, node: ast.Attribute, scope: dict[str, Any]) -> Any:
        owner = self.expr(node.value, scope)
        if isinstance(owner, Node):
            if node.attr not in owner:
                raise self.fail(node, f"`{node.attr}` is read before it is set")
            return owner[node.attr]
        raise self.fail(node, f"attribute `.{node.attr}` is not evaluated (only config fields are read)")

    def e_Subscript(self, node: ast.Subscript, scope: dict[str, Any]) -> Any:
        owner = self.expr(node.value, scope)
        if isinstance(node.slice, ast.Slice):
            parts = [None if p is None else self.expr(p, scope) for p in (node.slice.lower, node.slice.upper)]
            step = None if node.slice.step is None else self.expr(node.slice.step, scope)
            if not isinstance(owner, list | tuple | str):
                raise self.fail(node, "only lists, tuples and strings can be sliced")
            return owner[slice(parts[0], parts[1], step)]
        key = self.expr(node.slice, scope)
        try:
            if isinstance(owner, list | tuple | str) and isinstance(key, int):
                return owner[key]
            if isinstance(owner, dict) and isinstance(key, str):
                return owner[key]
        except (IndexError, KeyError):
            raise self.fail(node, f"index {key!r} is out of range") from None
        raise self.fail(node, "this subscript is not evaluated")

    def e_UnaryOp(self, node: ast.UnaryOp, scope: dict[str, Any]) -> Any:
        value = self.expr(node.operand, scope)
        if isinstance(node.op, ast.Not):
            return not value
        if isinstance(node.op, ast.USub | ast.UAdd) and isinstance(value, int | float):
            return -value if isinstance(node.op, ast.USub) else +value
        raise self.fail(node, f"operator {type(node.op).__name__} of this value is not evaluated")

    def binop(self, node: ast.AST, op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
        if op is operator.pow:
            if not isinstance(left, int | float) or not isinstance(right, int | float):
                raise self.fail(node, "** applies to numbers only")
            if abs(right) > MAX_EXPONENT or (isinstance(left, int) and abs(left) > 2**64):
                raise self.fail(node, f"exponent or base too large (at most {MAX_EXPONENT})")
        if op is operator.mul and (
            isinstance(left, list | tuple | str) or isinstance(right, list | tuple | str)
        ):
            seq, times = (left, right) if isinstance(left, list | tuple | str) else (right, left)
            if not isinstance(times, int) or len(seq) * max(times, 0) > self.budget:
                raise self.fail(node, "sequence repetition too large")
        if op is operator.mod and isinstance(left, str):
            raise self.fail(node, "%-formatting is not evaluated")
        try:
            result = op(left, right)
        except (TypeError, ZeroDivisionError, OverflowError, ValueError) as exc:
            raise self.fail(node, f"cannot evaluate: {exc}") from None
        if isinstance(result, complex):
            raise self.fail(node, "the result is a complex number; not evaluated")
        return self.spend(node, result)

    def e_BinOp(self, node: ast.BinOp, scope: dict[str, Any]) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {type(node.op).__name__} is not evaluated")
        return self.binop(node, op, self.expr(node.left, scope), self.expr(node.right, scope))

    def e_BoolOp(self, node: ast.BoolOp, scope: dict[str, Any]) -> Any:
        value: Any = None
        for i, operand in enumerate(node.values):
            value = self.expr(operand, scope)
            last = i == len(node.values) - 1
            if not last and (
                (isinstance(node.op, ast.And) and not value) or (isinstance(node.op, ast.Or) and value)
            ):
                return value
        return value

    def e_Compare(self, node: ast.Compare, scope: dict[str, Any]) -> Any:
        left = self.expr(node.left, scope)
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.expr(right_node, scope)
            self.weigh(node, left)
            self.weigh(node, right)
            try:
                if not _CMPOPS[type(op_node)](left, right):
                    return False
            except TypeError as exc:
                raise self.fail(node, f"cannot compare: {exc}") from None
            left = right
        return True

    def e_IfExp(self, node: ast.IfExp, scope: dict[str, Any]) -> Any:
        return self.expr(node.body if self.expr(node.test, scope) else node.orelse, scope)

    def _generate(
        self, generators: list[ast.comprehension], scope: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        if not generators:
            yield scope
            return
        first, rest = generators[0], generators[1:]
        if first.is_async:
            raise self.fail(first.iter, "async comprehensions are not evaluated")
        iterable = self.expr(first.iter, scope)
        if not isinstance(iterable, list | tuple | str | dict):
            raise self.fail(first.iter, "comprehensions iterate over lists, tuples, strings or dicts only")
        for item in list(iterable):
            self.step(first.iter)
            inner = dict(scope)
            self.assign(first.target, item, inner, first.iter.lineno)
            if all(self.expr(cond, inner) for cond in first.ifs):
                yield from self._generate(rest, inner)

    def e_ListComp(self, node: ast.ListComp, scope: dict[str, Any]) -> Any:
        out = []
        for inner in self._generate(node.generators, scope):
            out.append(self.expr(node.elt, inner))
            self.spend(node, [None])
        return out

    e_GeneratorExp = e_ListComp

    def e_Call(self, node: ast.Call, scope: dict[str, Any]) -> Any:
        func = node.func
        name = func.id if isinstance(func, ast.Name) and func.id not in scope else None
        is_configdict = (
            isinstance(func, ast.Attribute)
            and func.attr == "ConfigDict"
            and isinstance(func.value, ast.Name)
            and func.value.id in self.module_aliases
        ) or (name is not None and name in self.configdict_names)
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise self.fail(node, "`*args` / `**kwargs` in calls are not evaluated")
        if is_configdict or name == "dict":
            return self.spend(node, self.make_dict(node, scope, configdict=is_configdict))
        if name is not None and name in _SIMPLE_CALLS:
            if node.keywords:
                raise self.fail(node, f"keyword arguments to {name}() are not evaluated")
            args = [self.expr(a, scope) for a in node.args]
            for a in args:
                if not isinstance(a, (*_SCALARS, list, tuple, dict)):
                    raise self.fail(node, f"{name}() of this value is not evaluated")
            self.check_call(node, name, args)
            try:
                return self.spend(node, _SIMPLE_CALLS[name](*args))
            except (TypeError, ValueError, OverflowError) as exc:
                raise self.fail(node, f"cannot evaluate {name}(): {exc}") from None
        shown = ast.unparse(func)
        raise self.fail(node, f"call of `{shown}` is not evaluated (no code from the config is run)")

    def check_call(self, node: ast.Call, name: str, args: list[Any]) -> None:
        """Bounds of the calls whose cost is not that of their arguments (checked before the call)."""
        for a in args:
            self.weigh(node, a)
        if name == "range":
            try:
                n = len(range(*args))
            except (TypeError, ValueError, OverflowError) as exc:
                raise self.fail(node, f"cannot evaluate range(): {exc}") from None
            if n > self.budget:
                raise self.fail(node, f"range() of {n} numbers is too large")
        elif name == "sum":
            if len(args) > 1 or (args and not isinstance(args[0], list | tuple)):
                raise self.fail(node, "sum() takes one list or tuple of numbers")
            if args and not all(isinstance(a, int | float) for a in args[0]):
                raise self.fail(node, "sum() adds numbers only")
        elif name == "round" and len(args) > 1:
            digits = args[1]
            if isinstance(digits, int) and abs(digits) > MAX_EXPONENT:
                raise self.fail(node, f"round() to at most {MAX_EXPONENT} digits")

    def make_dict(self, node: ast.Call, scope: dict[str, Any], *, configdict: bool) -> Node:
        out = Node()
        if len(node.args) > 1:
            raise self.fail(node, "dict()/ConfigDict() take at most one positional argument")
        if node.args:
            base = self.expr(node.args[0], scope)
            if isinstance(base, Node):
                for key, value in base.items():
                    out.put(key, value, base.lines.get(key, node.lineno))
            elif base is None and configdict:
                pass
            elif isinstance(base, dict):
                for key, value in base.items():
                    out.put(str(key), value, node.lineno)
            elif isinstance(base, list | tuple) and not configdict:
                for pair in base:
                    if not (isinstance(pair, list | tuple) and len(pair) == 2 and isinstance(pair[0], str)):
                        raise self.fail(node, "dict() of a list needs (str, value) pairs")
                    out.put(pair[0], pair[1], node.lineno)
            else:
                raise self.fail(node, "dict()/ConfigDict() of this value is not evaluated")
        for kw in node.keywords:
            assert kw.arg is not None
            out.put(kw.arg, self.expr(kw.value, scope), kw.value.lineno)
        return out


def _as_load(target: ast.expr) -> ast.expr:
    """The same expression in load context (for augmented assignments)."""
    copy = ast.parse(ast.unparse(target), mode="eval").body
    return ast.fix_missing_locations(ast.copy_location(copy, target))


def _flatten(node: Node, prefix: str, out: dict[str, Knob]) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Node) and value:
            _flatten(value, name + ".", out)
        else:
            out[name] = Knob(name, _plain(value), node.lines.get(key, 0))


def _plain(value: Any) -> Any:
    """Node -> dict, recursively (values handed to the knob mapping are plain Python data)."""
    if isinstance(value, Node):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


class _TooLarge(Exception):
    pass


def _weigh(value: Any, budget: int) -> int:
    """What is left of ``budget`` after visiting every element of ``value`` (a shared part as often as it
    is used); `_TooLarge` when the budget runs out or the value nests deeper than `MAX_VALUE_DEPTH`."""
    level = [value] if isinstance(value, list | tuple | dict) else []
    depth = 1
    while level:
        if depth > MAX_VALUE_DEPTH:
            raise _TooLarge("deep")
        deeper: list[Any] = []
        for item in level:
            children = item.values() if isinstance(item, dict) else item
            budget -= len(children) + 1
            if budget < 0:
                raise _TooLarge("large")
            deeper.extend(c for c in children if isinstance(c, list | tuple | dict))
        level, depth = deeper, depth + 1
    return budget


def _check_depth(path: Path, root: Node) -> None:
    """Values nested deeper than `MAX_VALUE_DEPTH`, or more than `MAX_ELEMENTS` of them (a shared value
    counted each time it is used), are refused without recursion, naming the line of the knob that
    holds them."""
    budget = MAX_ELEMENTS
    for key, value in root.items():
        try:
            budget = _weigh(value, budget)
        except _TooLarge as exc:
            message = DEEP if exc.args[0] == "deep" else f"the config holds more than {MAX_ELEMENTS} values"
            raise ConfigReadError(f"{path}:{root.lines.get(key, 0)}: {message}") from None


def read_config(path: Path) -> ReferenceConfig:
    """Parse and evaluate (the safe subset of) the reference config at ``path``."""
    path = Path(path)
    text = read_utf8(path, MAX_FILE_BYTES, ConfigReadError)
    try:
        with warnings.catch_warnings():  # SyntaxWarning, DeprecationWarning: never a second line
            warnings.simplefilter("ignore")
            tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise ConfigReadError(f"{path}:{exc.lineno}: not valid Python ({exc.msg})") from None
    except (RecursionError, MemoryError):  # the parser's own limits on nesting
        raise ConfigReadError(f"{path}: expressions nested too deeply to parse") from None
    root = _Evaluator(path).module(tree)
    _check_depth(path, root)
    knobs: dict[str, Knob] = {}
    _flatten(root, "", knobs)
    for knob in knobs.values():
        if isinstance(knob.value, float) and not math.isfinite(knob.value):
            raise ConfigReadError(f"{path}:{knob.line}: {knob.name} is not a finite number")
    return ReferenceConfig(path, knobs)
