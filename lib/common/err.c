/* placeholder: being written */
typedef int chat__placeholder_t;
