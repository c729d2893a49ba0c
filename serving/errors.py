"""Error answers: a short reason for the client, the details (addresses, paths, tracebacks) in the log.

Routes under /v2 answer in the Open Inference Protocol's form `{"error": "..."}`; the others
in FastAPI's `{"detail": "..."}`.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

V2_PREFIX = "/v2"


class ApiError(Exception):
    """An answer other than 200 whose `message` is fit for the client (no addresses, paths, traces)."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


def error_response(request: Request, status_code: int, message: str, headers: dict | None = None) -> JSONResponse:
    return error_response_for(request.url.path, status_code, message, headers)


def error_response_for(path: str, status_code: int, message: str, headers: dict | None = None) -> JSONResponse:
    key = "error" if path.startswith(V2_PREFIX) else "detail"
    return JSONResponse({key: message}, status_code=status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _client_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(request, error.status_code, error.message, error.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(request, error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return error_response(request, 422, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Starlette re-raises the error after this answer, so uvicorn logs its traceback.
        return error_response(request, 500, "internal error (details in the server log)")
