"""plinth console: the platform in a browser (jobs, flows, models and releases, usage and cost)."""

from __future__ import annotations

import typer

from platform_cli.errors import PlinthError


def console(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; beyond loopback it needs --token or --read-only"),
    port: int = typer.Option(8600, "--port", "-p", min=0, max=65535, help="port to listen on (0: any free port)"),
    stack: list[str] = typer.Option(None, "--stack", "-s", help="stack to show, repeatable; default: every stack in stacks/", show_default=False),
    token: str = typer.Option(None, "--token", envvar="PLINTH_CONSOLE_TOKEN", help="secret every request must carry (the printed URL has it)", show_default=False),
    read_only: bool = typer.Option(False, "--read-only", help="show everything, allow no action (cancel, restart, resume, promote...)"),
):
    """Start the console and print its URL; Ctrl-C stops it."""
    import gc
    import socket

    import uvicorn

    from platform_cli.console.app import create_app
    from platform_cli.console.security import Guard, check_bind
    from platform_cli.spec.stack import load_stack, stack_names

    check_bind(host, token, read_only)
    stacks = [load_stack(name) for name in (stack or stack_names())]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)  # connections wait in the backlog until the server takes them
    except OSError as exc:
        listener.close()
        raise PlinthError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})", "pick another port with --port, or 0 for any free one") from None
    port = listener.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    app = create_app(stacks, Guard(host=host, port=port, token=token, read_only=read_only))
    # The socket already listens: a browser opened on this URL now waits in its backlog while
    # the console warms up (imports, first reads), then gets its page.
    typer.echo(f"console at {url}  (stacks: {', '.join(s.name for s in stacks)}{'; read-only' if read_only else ''})")
    app.state.console.warm()
    # A server holds a large, long-lived heap (MLflow, SQLAlchemy, the stores' caches); left to
    # the collector, each full pass over it stalls a request by a few hundred ms. Frozen objects
    # are never scanned again; what requests allocate is collected as usual.
    gc.collect()
    gc.freeze()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass
