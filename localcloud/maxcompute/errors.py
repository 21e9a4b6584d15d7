"""MaxCompute's errors as the service answers them: an HTTP status, a code and a message.

pyodps parses ``<Error><Code/><Message/><RequestId/><HostId/></Error>`` (REST) or the JSON form
``{"Code", "Message"}`` (tunnel) and picks its exception class from the code (``odps.errors``), so the
code is the interface: ``NoSuchObject`` / ``NoSuchTable`` / ``ParseError`` / ``ODPS-0130161`` ...
SQL errors travel inside a failed instance's task result, as ``ODPS-0130161:[line,col] ...`` text.
"""

from __future__ import annotations


class MaxComputeError(Exception):
    """An error the server answers: ``status`` (HTTP), ``code`` and ``message`` as the service words them."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def no_such_object(message: str) -> MaxComputeError:
    return MaxComputeError(404, "NoSuchObject", message)


def invalid_parameter(message: str) -> MaxComputeError:
    return MaxComputeError(400, "InvalidParameter", message)


def object_already_exists(message: str) -> MaxComputeError:
    return MaxComputeError(409, "ObjectAlreadyExists", message)


class SqlError(MaxComputeError):
    """A SQL task's failure: ``code`` is the ``ODPS-0130161`` form; the text pyodps raises is
    ``"<code>:<message>"`` (it maps the code to ParseError, NoSuchTable, ... by the prefix)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(400, code, message)

    @property
    def task_result(self) -> str:
        return f"{self.code}:{self.message}"


# SQL error codes the local engine uses (as the service numbers them).
PARSE_ERROR = "ODPS-0130161"       # syntax: "ODPS-0130161:[1,8] Parse exception - ..."
SEMANTIC_ERROR = "ODPS-0130071"    # semantic analysis: unknown column, ORDER BY without LIMIT, full scan
NO_SUCH_TABLE = "ODPS-0130131"     # "Table not found - table <project>.<name> cannot be resolved"
NO_SUCH_PARTITION = "ODPS-0130211"  # hedged: partition errors are numbered in the 01302xx range
TABLE_EXISTS = "ODPS-0130071"      # CREATE TABLE of an existing table without IF NOT EXISTS
NOT_SUPPORTED = "ODPS-0130071"     # a statement the local engine does not run (named in the message)
RUNTIME_ERROR = "ODPS-0121095"     # hedged: a failure while running (bad cast, invalid regex), "Invalid argument"
