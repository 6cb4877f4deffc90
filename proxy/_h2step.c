/*
 * etcdlab.proxy._h2step: step over the frames of an HTTP/2 byte stream.
 *
 * One function, watch(), the compiled twin of h2frames.watch_frames (the
 * pure-Python reference, which a property test holds this to on arbitrary
 * bytes: tests/proxy/test_h2frames.py). Why it is written by hand in C:
 * with no fault active the proxy still follows every frame header the
 * client sends, because HPACK's table and the paths of open streams must be
 * known the moment a method-filtered fault arrives. In Python stepping over
 * a frame header cost about 2,900 machine instructions (the tightest loop
 * we could write, 1,500), and a gRPC call sends six frames: more than the
 * bare pump spends forwarding the call. Here it costs about 35 (callgrind,
 * docs/BENCHMARKS.md). Only frames the caller takes whole (request
 * header blocks) become Python objects. What the loop checks, and where it
 * stops for the general path, is not decided here: the caller passes a table
 * built from h2frames' rules, so the protocol's rules live in one place.
 * By hand rather than through Cython, mypyc or a Rust extension: one loop of
 * fifty lines needs nothing at install time beyond a C compiler and
 * Python's headers, where those would add a build dependency (and, for
 * Rust, a toolchain) to `make venv` and CI for the same machine code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define HEADER_SIZE 9
#define FLAG_END_HEADERS 0x4

/* One rule byte per frame type (h2frames.step_table), then one byte of
 * the payload length the type requires (0xFF: any). */
#define TAKE 0x01      /* of interest: hand it to the caller whole */
#define BLOCK 0x02     /* starts or continues a header block */
#define GENERAL 0x04   /* always left to the general path (CONTINUATION) */
#define ZERO_ONLY 0x08 /* only on stream 0 */
#define NONZERO 0x10   /* never on stream 0 */
#define SETTINGS 0x20  /* length a multiple of 6 */
#define ANY_LENGTH 0xFF

/* watch(data, pos, table, max_size, frame, out) -> int
 *
 * Step over the whole frame headers in data from pos, appending
 * frame(type, flags, stream_id, raw) to out for each frame of interest
 * that lies whole in data and breaks no rule. Return where the general
 * path takes over: a frame of interest cut by the end of data or breaking
 * a rule, a header block that goes on in CONTINUATION frames, a length
 * over max_size, or the end (past len(data) when the last frame's payload
 * runs on into the next chunk). */
static PyObject *
watch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "watch() takes 6 arguments");
        return NULL;
    }
    PyObject *data = args[0], *table = args[2], *frame = args[4], *out = args[5];
    if (!PyBytes_Check(data) || !PyBytes_Check(table) || !PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "watch() takes bytes, int, bytes, int, type, list");
        return NULL;
    }
    if (PyBytes_GET_SIZE(table) != 512) {
        PyErr_SetString(PyExc_ValueError, "watch(): the table is 512 bytes");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t max_size = PyLong_AsSsize_t(args[3]);
    if (max_size == -1 && PyErr_Occurred())
        return NULL;
    if (pos < 0) {
        PyErr_SetString(PyExc_ValueError, "watch(): pos must not be negative");
        return NULL;
    }
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(data);
    const unsigned char *rules = (const unsigned char *)PyBytes_AS_STRING(table);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    while (pos <= size - HEADER_SIZE) {
        const unsigned char *head = bytes + pos;
        Py_ssize_t length = ((Py_ssize_t)head[0] << 16) | (head[1] << 8) | head[2];
        unsigned int type = head[3];
        unsigned int rule = rules[type];
        if ((rule & (TAKE | BLOCK | GENERAL)) || length > max_size) {
            unsigned int flags = head[4];
            if (length > max_size || (rule & GENERAL)
                || ((rule & BLOCK) && !(flags & FLAG_END_HEADERS)))
                break;
            if (rule & TAKE) {
                unsigned long stream = ((unsigned long)(head[5] & 0x7F) << 24)
                                       | ((unsigned long)head[6] << 16)
                                       | ((unsigned long)head[7] << 8) | head[8];
                Py_ssize_t end = pos + HEADER_SIZE + length;
                unsigned int fixed = rules[256 + type];
                if (end > size || (fixed != ANY_LENGTH && length != (Py_ssize_t)fixed)
                    || ((rule & ZERO_ONLY) && stream) || ((rule & NONZERO) && !stream)
                    || ((rule & SETTINGS) && length % 6))
                    break;
                PyObject *fields[4] = {
                    PyLong_FromUnsignedLong(type),
                    PyLong_FromUnsignedLong(flags),
                    PyLong_FromUnsignedLong(stream),
                    PyBytes_FromStringAndSize((const char *)head, HEADER_SIZE + length),
                };
                PyObject *made = NULL;
                if (fields[0] && fields[1] && fields[2] && fields[3])
                    made = PyObject_Vectorcall(frame, fields, 4, NULL);
                for (int i = 0; i < 4; i++)
                    Py_XDECREF(fields[i]);
                if (made == NULL)
                    return NULL;
                int failed = PyList_Append(out, made);
                Py_DECREF(made);
                if (failed)
                    return NULL;
            }
        }
        pos += HEADER_SIZE + length;
    }
    return PyLong_FromSsize_t(pos);
}

static PyMethodDef methods[] = {
    {"watch", (PyCFunction)(void (*)(void))watch, METH_FASTCALL,
     "watch(data, pos, table, max_size, frame, out) -> int: step over whole "
     "frames (see etcdlab.proxy.h2frames.watch_frames)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_h2step",
    "Steps over HTTP/2 frame headers (etcdlab.proxy.h2frames.watch_frames, compiled).",
    0,
    methods,
};

PyMODINIT_FUNC
PyInit__h2step(void)
{
    return PyModuleDef_Init(&module);
}
