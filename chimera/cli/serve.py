"""`chimera serve`, `chimera chat` and `chimera models prepare`: run the server, talk to it, provision its models."""

import argparse
import contextlib

from chimera.config import ChimeraConfig


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Register `serve`, `chat` and `models prepare` on the top-level subparsers."""
    p = sub.add_parser("serve", help="start the stack and the OpenAI-compatible server")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=_serve)

    p = sub.add_parser("chat", help="ask a running server one question")
    p.add_argument("message")
    p.add_argument("--model", default="chimera", help="chimera | auto | chimera-code|math|text|chat")
    p.add_argument("--session", help="x-session-id to continue a conversation")
    p.add_argument("--url", help="server URL (default: from the config)")
    p.set_defaults(func=_chat)

    p = sub.add_parser("models", help="model provisioning")
    models_sub = p.add_subparsers(dest="models_command", required=True)
    prep = models_sub.add_parser("prepare", help="build local HF folders of the config's packaged models")
    prep.set_defaults(func=_prepare)


def _serve(config: ChimeraConfig, args: argparse.Namespace) -> int:
    import uvicorn

    from chimera.api.app import create_app
    from chimera.api.uvicorn_server import uvicorn_config
    from chimera.runtime import Runtime

    server = config.server.model_copy(
        update={k: v for k, v in {"host": args.host, "port": args.port}.items() if v is not None}
    )
    runtime = Runtime(config)
    try:
        app = create_app(runtime.start(), config.server)
        print(f"Chimera serving on http://{server.host}:{server.port}", flush=True)
        http = uvicorn.Server(uvicorn_config(app, server, host=server.host, port=server.port))
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the server, then is raised again (as uvicorn.run)
            http.run()
    finally:
        runtime.stop()
    return 0 if http.started else 1


def _chat(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from chimera.client import Client

    client = Client(args.url or f"http://{config.server.host}:{config.server.port}")
    reply = client.chat(args.message, model=args.model, session_id=args.session)
    print(reply.text)
    print(f"\n[expert {reply.expert} (confidence {reply.route_confidence:.2f}) · trace {reply.trace_id} · "
          f"session {reply.session_id} · {reply.usage['completion_tokens']} tokens]")  # fmt: skip
    return 0


def _prepare(config: ChimeraConfig, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from chimera.models import provision

    names = provision.packaged_names_in_use([s.model for s in config.engines.values()])
    for name in tqdm(names, desc="models", unit="model"):
        folder = provision.prepare(name, config.data_dir)
        tqdm.write(f"{name}: {folder}")
    if not names:
        print("the config uses no packaged models; nothing to prepare")
    return 0
