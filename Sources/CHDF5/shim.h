// HDF5's C API plus getters for the macros Swift cannot import (casts and global-id lookups).
#ifndef CHDF5_SHIM_H
#define CHDF5_SHIM_H
#include <hdf5.h>

static inline hid_t chdf5_P_DEFAULT(void) { return H5P_DEFAULT; }
static inline hid_t chdf5_S_ALL(void) { return H5S_ALL; }
static inline hsize_t chdf5_S_UNLIMITED(void) { return H5S_UNLIMITED; }
static inline unsigned chdf5_F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned chdf5_F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned chdf5_F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned chdf5_F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline hid_t chdf5_P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t chdf5_P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t chdf5_P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t chdf5_P_GROUP_CREATE(void) { return H5P_GROUP_CREATE; }
static inline hid_t chdf5_T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t chdf5_T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t chdf5_T_NATIVE_INT8(void) { return H5T_NATIVE_INT8; }
static inline hid_t chdf5_T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t chdf5_T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t chdf5_T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t chdf5_T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t chdf5_T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t chdf5_T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t chdf5_T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t chdf5_T_STD_I32LE(void) { return H5T_STD_I32LE; }
static inline hid_t chdf5_T_STD_U8LE(void) { return H5T_STD_U8LE; }
static inline hid_t chdf5_T_STD_I8LE(void) { return H5T_STD_I8LE; }
static inline hid_t chdf5_T_C_S1(void) { return H5T_C_S1; }
static inline size_t chdf5_T_VARIABLE(void) { return H5T_VARIABLE; }

/// Silences HDF5's automatic error stack printing; errors are read and thrown instead.
static inline void chdf5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, 0, 0); }

#include <stdio.h>
#include <string.h>

static herr_t chdf5_walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = (char *)data;
    size_t len = strlen(buf);
    if (len >= 1000) return 0;
    snprintf(buf + len, 1024 - len, "%s%s: %s", len ? "; " : "", e->func_name ? e->func_name : "?",
             e->desc ? e->desc : "");
    (void)n;
    return 0;
}

/// Writes HDF5's current error stack (outermost call first) into `buf` (1024 bytes) and clears it.
static inline void chdf5_take_error(char *buf) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, chdf5_walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
}

#endif
