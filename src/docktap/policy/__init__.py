"""The guard: a least-privilege docker.sock, learned from captures.

`model` is the policy file (YAML) and its format version; `asks` reads what a request asks the
daemon for, through docktap's request model; `decide` puts one request through a policy;
`learn` writes the policy a set of captures needs; `check` replays captures through a policy;
`gate` holds a connection's requests until they are decided, and tells the relay what to do
with them (`actions`); `export` gives the nearest configuration of other socket proxies.
"""
