#!/usr/bin/env python3
"""A stand-in for the ORIGINAL Python course chat program, for tests only.

Written from PROTOCOL.md and WIRE-IN-THE-WILD.md (the project's notes on the protocol as
the original speaks it), not from the original's source. It keeps the original's wire
behaviour and the lines it shows its user, so tests/legacy_interop.rs can drive it through
stdin like a user:

* wire: the sender connects, writes `SENDER_IP:SENDER_LISTEN_PORT NAME TEXT` (UTF-8, no
  newline) with ONE `send`, closes. The receiver accepts, does ONE `recv(1024)`,
  `split(" ", 2)`, splits `IP:PORT` on ':', and silently drops what does not parse.
  `exit` / `connect` are recognised in any case, compared unstripped (`exit\\n` is text).
* listen backlog 5, one thread per inbound connection; quit sends `exit` to every peer one
  after another, each send blocking up to the timeout.

Deliberate differences from the original, all for tests:

* SENDER_IP: the original uses gethostbyname(gethostname()) (often 127.0.1.1); here it is
  env LEGACY_IP, default 127.0.0.1, so a test never sends anywhere but loopback.
* it listens on env LEGACY_BIND, default 127.0.0.1 (the original binds 0.0.0.0).
* the send timeout (20 s in the original) is env LEGACY_TIMEOUT, in seconds.
* stdout is flushed after every print, and printing is serialised between threads, so a
  reader on a pipe sees whole lines; prompts are printed without a newline, like input().
* end of stdin ends the program quietly (exit status 0) instead of an EOFError traceback;
  a bad number typed at a prompt prints "Invalid input" instead of a ValueError traceback.
* peers are listed in the order they became known (the original's order is a set's).
* anything dropped on receipt is noted on stderr (the original would stay silent or print
  a traceback there), which helps when a test fails.

Python 3 standard library only.
"""

import os
import socket
import sys
import threading

SENDER_IP = os.environ.get("LEGACY_IP", "127.0.0.1")
BIND_IP = os.environ.get("LEGACY_BIND", "127.0.0.1")
TIMEOUT = float(os.environ.get("LEGACY_TIMEOUT", "20"))

# (ip, port) -> {"name": str or None, "connected": bool}, in the order peers became known.
peers = {}
lock = threading.Lock()
out_lock = threading.Lock()


def emit(text):
    """Writes `text` at once and flushes: whole lines even with several threads printing."""
    with out_lock:
        sys.stdout.write(text)
        sys.stdout.flush()


def say(line=""):
    emit(line + "\n")


def ask(prompt):
    """input(prompt), but the prompt goes through emit(); None at end of input."""
    emit(prompt)
    line = sys.stdin.readline()
    if not line:
        return None
    return line[:-1] if line.endswith("\n") else line


def name_of(key):
    with lock:
        peer = peers.get(key)
        return (peer and peer["name"]) or "Unknown"


def note(why, data):
    sys.stderr.write("legacy_peer: dropped %s: %r\n" % (why, data))
    sys.stderr.flush()


# ----- receiving ------------------------------------------------------------------------


def handle(conn):
    try:
        data = conn.recv(1024)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            note("not UTF-8", data)
            return
        parts = text.split(" ", 2)
        if len(parts) < 3:
            note("fewer than three fields", data)
            return
        address, sender_name, message = parts
        try:
            sender_ip, sender_port = address.split(":")
            sender_port = int(sender_port)
        except ValueError:
            note("bad IP:PORT", data)
            return
        key = (sender_ip, sender_port)
        where = "%s [%s:%d]" % (sender_name, sender_ip, sender_port)
        if message.lower() == "exit":
            with lock:
                peers.pop(key, None)
            say("\n%s disconnected" % where)
            return
        with lock:
            new = key not in peers
            if new:
                peers[key] = {"name": sender_name, "connected": False}
            else:
                peers[key]["name"] = sender_name
        if new:
            say("\nNew peer found: %s" % where)
        if message.lower() == "connect":
            say("\n%s connected with you" % where)
        else:
            say("\nMessage from %s: %s" % (where, message))
    except OSError as e:
        note("connection error %s" % e, b"")
    finally:
        conn.close()


def serve(server):
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


# ----- sending --------------------------------------------------------------------------


def send_message(ip, port, my_name, my_port, message):
    """One connection, one send, close. Prints the outcome; True when it went out."""
    key = (ip, port)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect((ip, port))
            s.send(("%s:%d %s %s" % (SENDER_IP, my_port, my_name, message)).encode("utf-8"))
    except OSError:
        say("Failed to contact %s [%s:%d]" % (name_of(key), ip, port))
        return False
    where = "%s [%s:%d]" % (name_of(key), ip, port)
    with lock:
        if message.lower() == "exit":
            peers.pop(key, None)
        elif key not in peers:
            peers[key] = {"name": None, "connected": False}
        if message.lower() == "connect" and key in peers:
            peers[key]["connected"] = True
    if message.lower() == "connect":
        say("Successfully connected to %s" % where)
    elif message.lower() == "exit":
        say("Disconnected from %s" % where)
    else:
        say("Message sent to %s: %s" % (where, message))
    return True


# ----- the menu -------------------------------------------------------------------------


def show_peers():
    with lock:
        rows = [(k, dict(p)) for k, p in peers.items()]
    if not rows:
        say("\nNo active peers.")
        return
    say("\nActive Peers:")
    for i, ((ip, port), p) in enumerate(rows, 1):
        status = "Connected" if p["connected"] else "Yet to connect"
        say("%d. %s [%s:%d] - %s" % (i, p["name"] or "Unknown", ip, port, status))


def connect_menu(my_name, my_port):
    """Returns False at end of input."""
    with lock:
        rows = [(k, p["name"]) for k, p in peers.items() if not p["connected"]]
    if not rows:
        say("\nNo peers remaining for connection.")
        return True
    say("\nActive Peers remaining for connection:")
    for i, ((ip, port), name) in enumerate(rows, 1):
        say("%d. %s [%s:%d]" % (i, name or "Unknown", ip, port))
    answer = ask("\nEnter the index of the peer to connect to (Enter 0 to connect to all): ")
    if answer is None:
        return False
    say()
    try:
        index = int(answer)
    except ValueError:
        say("Invalid input")
        return True
    if index == 0:
        chosen = [k for k, _ in rows]
    elif 1 <= index <= len(rows):
        chosen = [rows[index - 1][0]]
    else:
        say("Invalid input")
        return True
    for ip, port in chosen:
        send_message(ip, port, my_name, my_port, "connect")
    return True


def send_menu(my_name, my_port):
    """Returns False at end of input."""
    ip = ask("\nEnter recipient's IP address: ")
    if ip is None:
        return False
    port = ask("Enter recipient's port number: ")
    if port is None:
        return False
    message = ask("Enter your message (type exit to disconnect): ")
    if message is None:
        return False
    say()
    try:
        port = int(port)
    except ValueError:
        say("Invalid input")
        return True
    send_message(ip, port, my_name, my_port, message)
    return True


def main():
    my_name = ask("Enter your name (without spaces): ")
    if my_name is None:
        return
    port_text = ask("Enter your port number: ")
    if port_text is None:
        return
    try:
        my_port = int(port_text)
    except ValueError:
        say("Invalid input")
        return
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((BIND_IP, my_port))
    server.listen(5)
    say("\nServer listening on port %d" % my_port)
    threading.Thread(target=serve, args=(server,), daemon=True).start()

    while True:
        say("\n***** Menu *****")
        say("1. Send message")
        say("2. Query active peers")
        say("3. Connect to active peers")
        say("0. Quit")
        choice = ask("Enter choice: ")
        if choice is None:
            return
        choice = choice.strip()
        if choice == "1":
            if not send_menu(my_name, my_port):
                return
        elif choice == "2":
            show_peers()
        elif choice == "3":
            if not connect_menu(my_name, my_port):
                return
        elif choice == "0":
            say("Exiting...")
            with lock:
                leaving = list(peers)
            for ip, port in leaving:
                send_message(ip, port, my_name, my_port, "exit")
            with lock:
                peers.clear()
            return
        else:
            say("Invalid choice")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    # Daemon threads (the listener and its handlers) end with the process.
    os._exit(0)
