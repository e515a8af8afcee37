#!/usr/bin/env python3
"""Holds COUNT waiting requests open against the gateways: one HTTP/1.1
connection each, a GET with the tokens from line START on of TOKENS,
spread over the given gateway addresses in turn. Prints "open" once every
request is written, then waits; on SIGTERM it closes every connection (the
clients going away), and prints how many got an answer meanwhile.

    waiters.py TOKENS START COUNT HOST:PORT [HOST:PORT ...]
"""
import asyncio
import signal
import sys


async def main():
    tokens_path, start, count, *targets = sys.argv[1:]
    start, count = int(start), int(count)
    with open(tokens_path) as f:
        tokens = [line.strip() for line in f][start:start + count]
    writers, answered = [], 0
    for i, token in enumerate(tokens):
        host, port = targets[i % len(targets)].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET /api/x HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        await writer.drain()
        writers.append((reader, writer))
    print("open", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for reader, writer in writers:
        # A waiter that already got its answer has bytes to read.
        try:
            if await asyncio.wait_for(reader.read(1), 0.001):
                answered += 1
        except asyncio.TimeoutError:
            pass
        writer.close()
    print(f"answered {answered}", flush=True)


asyncio.run(main())
