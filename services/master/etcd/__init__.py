"""An asyncio client for etcd's v3 API on stubs generated from etcd's own protos, and a fenced leadership.

`EtcdClient` (client.py) speaks KV, Lease and Watch; `Leadership` (election.py) campaigns for a key on a lease
and gives the compare that fences every write of the leader. The builders of compares and ops are in ops.py,
the errors in errors.py. Nothing of the master uses it yet: the journal in etcd and the standby masters of
issue 20 will stand on it.
"""
