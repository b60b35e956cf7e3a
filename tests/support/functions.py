"""The function app's functions by name, built once: `app.get_functions()` raises when called a second time."""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from function_app import app

Function = Callable[[func.HttpRequest], func.HttpResponse]
FUNCTIONS: dict[str, Function] = {str(fn.get_function_name()): fn.get_user_function() for fn in app.get_functions()}
