"""HTTP handlers of the review page: each one turns a request into one Reviewer call."""

from __future__ import annotations

from typing import Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.params import FromPath, FromQuery, JSONBody, URLEncodedBody
from litestar.response import Redirect, Template

from review.auth import COOKIE, check_key, session_token
from review.decisions import Reviewer
from review.schemas import DecisionRequest, DecisionResponse, FileSummary, Progress

INDEX = "/"
FILE = "/files/{fid:int}"
NEXT = "/next"
LOGIN = "/login"
DECIDE = "/api/files/{fid:int}/entries/{eid:str}"
PROGRESS = "/api/progress"


def provide_reviewer(state: State) -> Reviewer:
    return state.reviewer


class PageController(Controller):
    dependencies = {"reviewer": Provide(provide_reviewer, sync_to_thread=False)}  # noqa: RUF012

    @get(INDEX, operation_id="index", sync_to_thread=True)
    def index(self, reviewer: NamedDependency[Reviewer]) -> Template:
        context = {"files": reviewer.summaries(), "overall": reviewer.overall()}
        return Template("index.html", context={**context, "next": reviewer.next_file()})

    @get(FILE, operation_id="file", sync_to_thread=True)
    def file(
        self,
        reviewer: NamedDependency[Reviewer],
        fid: FromPath[int],
        sort: FromQuery[Literal["file", "confidence"]] = "file",
    ) -> Template:
        entries = reviewer.entries(fid, by_confidence=sort == "confidence")
        context: dict[str, Any] = {
            "sort": sort,
            "fid": fid,
            "path": reviewer.files[fid].path,
            "entries": entries,
            "progress": reviewer.progress(fid),
            "overall": reviewer.overall(),
            "next": reviewer.next_file(fid),
        }
        return Template("file.html", context=context)

    @get(NEXT, operation_id="next", sync_to_thread=True)
    def next(self, reviewer: NamedDependency[Reviewer], after: FromQuery[int] = -1) -> Redirect:
        fid = reviewer.next_file(after)
        return Redirect(INDEX if fid is None else f"/files/{fid}")


class ApiController(Controller):
    dependencies = {"reviewer": Provide(provide_reviewer, sync_to_thread=False)}  # noqa: RUF012

    @post(DECIDE, operation_id="decide", sync_to_thread=True, status_code=200)
    def decide(
        self,
        reviewer: NamedDependency[Reviewer],
        fid: FromPath[int],
        eid: FromPath[str],
        data: JSONBody[DecisionRequest],
    ) -> DecisionResponse:
        return reviewer.decide(fid, eid, data)

    @get(PROGRESS, operation_id="progress", sync_to_thread=True)
    def progress(
        self, reviewer: NamedDependency[Reviewer]
    ) -> dict[str, Progress | list[FileSummary]]:
        return {"overall": reviewer.overall(), "files": reviewer.summaries()}


LOGIN_LIMIT = RateLimitConfig(rate_limit=("minute", 10), set_rate_limit_headers=False)


class LoginController(Controller):
    """Only where the server needs the API key (it is bound beyond loopback)."""

    opt = {"public": True}  # noqa: RUF012

    @get(LOGIN, operation_id="login_form")
    async def form(self) -> Template:
        return Template("login.html", context={"failed": False})

    # 10 tries a minute per client address: enough for a person, not for guessing keys
    @post(LOGIN, operation_id="login", status_code=303, middleware=[LOGIN_LIMIT.middleware])
    async def login(
        self,
        request: Request,
        data: URLEncodedBody[dict[str, str]],
    ) -> Response:
        key = request.app.state.api_key
        if not check_key(key, data.get("key", "")):
            return Template("login.html", context={"failed": True}, status_code=401)
        response = Redirect(INDEX, status_code=303)
        response.set_cookie(COOKIE, session_token(key), httponly=True, samesite="strict")
        return response
