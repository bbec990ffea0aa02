"""What runs in the graded kernel before each check, so that submitted code cannot fake a pass.

The kernel runs the student's code, so nothing in it is trusted. The grader therefore
decides pass or fail from each cell's execute reply (see `run`), and a setup cell it puts
first, before any student code, defines a guard that each check calls before its asserts:

- the `builtins` module gets back every entry it had at the start (`builtins.abs = ...`
  no longer fools `abs(answer - expected) < 1`);
- names in the notebook's namespace that hide a built-in the check uses are removed
  (`isinstance = lambda *a: True`);
- IPython's custom exception handler is dropped (`set_custom_exc` hid failing checks'
  tracebacks; the reply still said "error", and now there is nothing to hide);
- the exercise's answers must be plain values or objects of importable modules, never of a
  class the notebook made (a `float` subclass whose `__eq__` is always True).

Everything the guard uses is bound when the setup cell runs, and its name carries a nonce
that only the grader's own cells know. A student who reads this file and writes code against
it can still get around it; the sandbox (`sandbox`) keeps such code from reaching anyone else.
"""

from __future__ import annotations

import ast
import builtins
import secrets

SETUP = '''\
# (채점기) 준비: 검사가 변조되지 않은 내장 함수로 돌게 합니다.
def {name}(names, number, _b=__import__("builtins").__dict__,
           _snapshot=dict(__import__("builtins").__dict__), _shell=get_ipython(),
           _type=type, _isinstance=isinstance, _list=list, _str=str, _any=any, _fail=AssertionError,
           _sequences=(list, tuple, set, frozenset), _dict=dict,
           _plain=(int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset)):
    _b.update(_snapshot)
    _shell.custom_exceptions = ()
    namespace = _shell.user_ns
    for name in names:
        namespace.pop(name, None)
    prefix = "answer_" + _str(number)

    def foreign(value):
        kind = _type(value)
        return kind not in _plain and kind.__module__ in ("__main__", "builtins")

    for key, value in _list(namespace.items()):
        if key != prefix and not key.startswith(prefix + "_"):
            continue
        inner = []
        if _isinstance(value, _sequences):
            inner = _list(value)
        elif _isinstance(value, _dict):
            inner = _list(value.keys()) + _list(value.values())
        if foreign(value) or _any(foreign(item) for item in inner):
            raise _fail("답 " + key + "에는 노트북에서 직접 만든 클래스(class)의 객체를 쓸 수 없습니다: "
                        "수, 문자열, 리스트 같은 보통 값이나 실습이 준 객체를 넣으세요.")
'''


def new_name() -> str:
    """The guard's name in the kernel: a nonce the submitted code cannot know in advance."""
    return f"__vmkit_guard_{secrets.token_hex(8)}"


def setup_source(name: str) -> str:
    """The setup cell the grader runs first, defining the guard `name`."""
    return SETUP.format(name=name)


def builtin_names(source: str) -> list[str]:
    """Built-in names `source` reads (sorted), which the guard clears of shadowing variables."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return sorted(name for name in used if hasattr(builtins, name))


def call_source(name: str, check_source: str, number: int) -> str:
    """The line a check starts with: the guard for exercise `number`, given the check's source."""
    return f"{name}({tuple(builtin_names(check_source))!r}, {number})\n"
