/*
 * etcdlab.proxy._h2step: step over the frames of an HTTP/2 byte stream.
 *
 * The compiled twins of two pure-Python references in h2frames, which
 * property tests hold these to on arbitrary bytes
 * (tests/proxy/test_h2frames.py): watch(), of h2frames.watch_frames, and
 * Watcher, of h2frames.Watcher. Why they are written by hand in C: with no
 * fault active the proxy still follows every frame header the client sends,
 * because HPACK's table and the paths of open streams must be known the
 * moment a method-filtered fault arrives. In Python stepping over a frame
 * header cost about 2,900 machine instructions (the tightest loop we could
 * write, 1,500), and a gRPC call sends six frames: more than the bare pump
 * spends forwarding the call. Here it costs about 35 (callgrind,
 * docs/BENCHMARKS.md). watch() makes Python objects only of frames the
 * caller takes whole (request header blocks); Watcher makes none for a
 * block the HPACK decoder has read before, which is nearly every call's,
 * and leaves every other block to the Python path. What the loop checks,
 * and where it stops for the general path, is not decided here: the caller
 * passes a table built from h2frames' rules, and the decoder's own cache,
 * so the protocol's rules live in one place.
 * By hand rather than through Cython, mypyc or a Rust extension: one loop of
 * fifty lines needs nothing at install time beyond a C compiler and
 * Python's headers, where those would add a build dependency (and, for
 * Rust, a toolchain) to `make venv` and CI for the same machine code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define HEADER_SIZE 9
#define TYPE_HEADERS 0x1
#define FLAG_END_HEADERS 0x4
#define FLAG_PADDED 0x8
#define FLAG_PRIORITY 0x20

/* One rule byte per frame type (h2frames.step_table), then one byte of
 * the payload length the type requires (0xFF: any). */
#define TAKE 0x01      /* of interest: hand it to the caller whole */
#define BLOCK 0x02     /* starts or continues a header block */
#define GENERAL 0x04   /* always left to the general path (CONTINUATION) */
#define ZERO_ONLY 0x08 /* only on stream 0 */
#define NONZERO 0x10   /* never on stream 0 */
#define SETTINGS 0x20  /* length a multiple of 6 */
#define ANY_LENGTH 0xFF

/* What the stepping loop does with a frame it takes whole: 1 taken, go on;
 * 0 stop at it (the general path takes it); -1 an exception is set. */
typedef int (*take_fn)(void *ctx, const unsigned char *head, unsigned int type,
                       unsigned int flags, unsigned long stream, Py_ssize_t length);

/* Step over the whole frame headers in bytes[0:size] from pos, handing each
 * frame of interest that lies whole in them and breaks no rule to take().
 * Return where the general path takes over: a frame of interest cut by the
 * end, breaking a rule or refused by take(), a header block that goes on in
 * CONTINUATION frames, a length over max_size, or the end (past size when
 * the last frame's payload runs on into the next chunk); -1 on an error. */
static Py_ssize_t
step(const unsigned char *bytes, Py_ssize_t size, Py_ssize_t pos, const unsigned char *rules,
     Py_ssize_t max_size, take_fn take, void *ctx)
{
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
                int taken = take(ctx, head, type, flags, stream, length);
                if (taken < 0)
                    return -1;
                if (!taken)
                    break;
            }
        }
        pos += HEADER_SIZE + length;
    }
    return pos;
}

/* watch(): each frame taken is frame(type, flags, stream_id, raw), appended
 * to out; a None from frame() stops the loop at that frame. */
typedef struct {
    PyObject *frame, *out;
} Making;

static int
take_made(void *ctx, const unsigned char *head, unsigned int type, unsigned int flags,
          unsigned long stream, Py_ssize_t length)
{
    Making *making = ctx;
    PyObject *fields[4] = {
        PyLong_FromUnsignedLong(type),
        PyLong_FromUnsignedLong(flags),
        PyLong_FromUnsignedLong(stream),
        PyBytes_FromStringAndSize((const char *)head, HEADER_SIZE + length),
    };
    PyObject *made = NULL;
    if (fields[0] && fields[1] && fields[2] && fields[3])
        made = PyObject_Vectorcall(making->frame, fields, 4, NULL);
    for (int i = 0; i < 4; i++)
        Py_XDECREF(fields[i]);
    if (made == NULL)
        return -1;
    if (made == Py_None) {
        Py_DECREF(made);
        return 0;
    }
    int failed = PyList_Append(making->out, made);
    Py_DECREF(made);
    return failed ? -1 : 1;
}

/* watch(data, pos, table, max_size, frame, out) -> int
 *
 * The compiled twin of h2frames.watch_frames: step() over data from pos,
 * each frame taken made by frame() and appended to out. */
static PyObject *
watch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "watch() takes 6 arguments");
        return NULL;
    }
    PyObject *data = args[0], *table = args[2];
    Making making = {args[4], args[5]};
    if (!PyBytes_Check(data) || !PyBytes_Check(table) || !PyList_Check(making.out)) {
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
    pos = step((const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), pos,
               (const unsigned char *)PyBytes_AS_STRING(table), max_size, take_made, &making);
    return pos < 0 ? NULL : PyLong_FromSsize_t(pos);
}

/* Watcher: the compiled twin of h2frames.Watcher (which says what it is
 * for); the same fields, the same rules, held to it by property tests. */
typedef struct {
    PyObject_HEAD
    PyObject *table;   /* bytes: h2frames.step_table */
    PyObject *known;   /* dict: header block -> what to record for its stream */
    PyObject *paths;   /* dict: stream id -> what its block recorded */
    /* The last block looked up: the next is most often the same bytes, and
     * then this object (its hash kept) is the key, with no copy to make or
     * hash. */
    PyObject *last;
    Py_ssize_t max_size;
    Py_ssize_t batch;
    Py_ssize_t skip;
    Py_ssize_t max_stream;
    Py_ssize_t blocks;
} Watcher;

static int
take_known(void *ctx, const unsigned char *head, unsigned int type, unsigned int flags,
           unsigned long stream, Py_ssize_t length)
{
    Watcher *self = ctx;
    if (type != TYPE_HEADERS || (flags & (FLAG_PADDED | FLAG_PRIORITY)))
        return 0;
    PyObject *block = self->last;
    if (block == NULL || PyBytes_GET_SIZE(block) != length
        || memcmp(PyBytes_AS_STRING(block), head + HEADER_SIZE, length)) {
        block = PyBytes_FromStringAndSize((const char *)head + HEADER_SIZE, length);
        if (block == NULL)
            return -1;
        Py_XSETREF(self->last, block);
    }
    PyObject *value = PyDict_GetItemWithError(self->known, block);
    if (value == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (value != Py_None) {
        PyObject *key = PyLong_FromUnsignedLong(stream);
        if (key == NULL)
            return -1;
        int failed = PyDict_SetItem(self->paths, key, value);
        Py_DECREF(key);
        if (failed)
            return -1;
    }
    if ((Py_ssize_t)stream > self->max_stream)
        self->max_stream = (Py_ssize_t)stream;
    self->blocks++;
    return 1;
}

static PyObject *
Watcher_watch(Watcher *self, PyObject *data)
{
    if (!PyBytes_Check(data)) {
        PyErr_SetString(PyExc_TypeError, "watch() takes bytes");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (self->skip >= size) {
        self->skip -= size;
        Py_RETURN_NONE;
    }
    Py_ssize_t pos = step((const unsigned char *)PyBytes_AS_STRING(data), size, self->skip,
                          (const unsigned char *)PyBytes_AS_STRING(self->table), self->max_size,
                          take_known, self);
    if (pos < 0)
        return NULL;
    self->skip = pos > size ? pos - size : 0;
    if (pos < size || self->blocks >= self->batch)
        return PyLong_FromSsize_t(pos < size ? pos : size);
    Py_RETURN_NONE;
}

static int
Watcher_init(Watcher *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"table", "max_size", "known", "paths", "batch", NULL};
    PyObject *table, *known, *paths;
    Py_ssize_t max_size, batch;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "SnO!O!n", names, &table, &max_size,
                                     &PyDict_Type, &known, &PyDict_Type, &paths, &batch))
        return -1;
    if (PyBytes_GET_SIZE(table) != 512) {
        PyErr_SetString(PyExc_ValueError, "Watcher(): the table is 512 bytes");
        return -1;
    }
    Py_INCREF(table);
    Py_INCREF(known);
    Py_INCREF(paths);
    Py_XSETREF(self->table, table);
    Py_XSETREF(self->known, known);
    Py_XSETREF(self->paths, paths);
    Py_CLEAR(self->last);
    self->max_size = max_size;
    self->batch = batch;
    self->skip = self->max_stream = self->blocks = 0;
    return 0;
}

static void
Watcher_dealloc(Watcher *self)
{
    Py_XDECREF(self->table);
    Py_XDECREF(self->known);
    Py_XDECREF(self->paths);
    Py_XDECREF(self->last);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Watcher_members[] = {
    {"skip", T_PYSSIZET, offsetof(Watcher, skip), 0,
     "bytes of a frame's payload still to come"},
    {"max_stream", T_PYSSIZET, offsetof(Watcher, max_stream), 0,
     "the highest stream id of a header block followed"},
    {"blocks", T_PYSSIZET, offsetof(Watcher, blocks), 0, "header blocks followed"},
    {NULL, 0, 0, 0, NULL},
};

static PyMethodDef Watcher_methods[] = {
    {"watch", (PyCFunction)Watcher_watch, METH_O,
     "watch(data) -> int | None (see etcdlab.proxy.h2frames.Watcher.watch)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WatcherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "etcdlab.proxy._h2step.Watcher",
    .tp_basicsize = sizeof(Watcher),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Follows a client's frames while every header block is a known one "
              "(etcdlab.proxy.h2frames.Watcher, compiled).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Watcher_init,
    .tp_dealloc = (destructor)Watcher_dealloc,
    .tp_members = Watcher_members,
    .tp_methods = Watcher_methods,
};

static PyMethodDef methods[] = {
    {"watch", (PyCFunction)(void (*)(void))watch, METH_FASTCALL,
     "watch(data, pos, table, max_size, frame, out) -> int: step over whole "
     "frames (see etcdlab.proxy.h2frames.watch_frames)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_h2step",
    "Steps over HTTP/2 frame headers (etcdlab.proxy.h2frames.watch_frames and Watcher, "
    "compiled).",
    0,
    methods,
};

PyMODINIT_FUNC
PyInit__h2step(void)
{
    if (PyType_Ready(&WatcherType) < 0)
        return NULL;
    PyObject *made = PyModule_Create(&module);
    if (made == NULL)
        return NULL;
    if (PyModule_AddObjectRef(made, "Watcher", (PyObject *)&WatcherType) < 0) {
        Py_DECREF(made);
        return NULL;
    }
    return made;
}
