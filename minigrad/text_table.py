"""Plain-text tables for the study tools' reports (gradcheck, trace): cells padded to their
column's widest, and shapes written compactly enough for a column."""


def format_shape(shape):
    """(2, 3) -> "(2,3)", (3,) -> "(3,)", () -> "()": compact enough for table columns."""
    return "(" + ",".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def format_table(header, rows):
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)
