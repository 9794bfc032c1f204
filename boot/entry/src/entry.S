/*
 * Mica image entry: Multiboot1 and Multiboot2 headers, then the 32-to-64-bit trampoline.
 *
 * Both loaders enter `_start` in 32-bit protected mode, paging off, flat segments, with the
 * loader's magic in EAX and the physical address of its boot information in EBX.
 * The trampoline records both and the TSC, zeroes .bss (not the stacks), checks for long
 * mode, identity-maps the first 4 GiB with 2 MiB pages, enables long mode and calls
 * `mica_main(magic, info)`.
 * The hypervisor then builds its real page tables (W^X, guard pages) and never returns here.
 *
 * Constants: Multiboot Specification 0.6.96 (header flags, magic) and Multiboot2
 * Specification 2.0 (header, tags); AMD APM vol. 2 / Intel SDM vol. 3 (long-mode entry).
 */

.set MB1_MAGIC,       0x1BADB002
/* bit 0: page-align modules, bit 1: memory info, bit 16: a.out kludge address fields */
.set MB1_FLAGS,       0x00010003
.set MB2_MAGIC,       0xE85250D6
.set MB2_ARCH_I386,   0
.set MB2_HEADER_LEN,  32

.set COM1,            0x3F8

/* ---------------------------------------------------------------------------------------- */
.section .multiboot_header, "a"
.balign 8
mb1_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long 0x100000000 - (MB1_MAGIC + MB1_FLAGS)
    .long mb1_header            /* header_addr */
    .long __image_start         /* load_addr: file contents are loaded from here ... */
    .long __load_end            /* load_end_addr: ... to here */
    .long __image_end           /* bss_end_addr: zeroed up to here */
    .long _start                /* entry_addr */

.balign 8
mb2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long MB2_HEADER_LEN
    .long 0x100000000 - (MB2_MAGIC + MB2_ARCH_I386 + MB2_HEADER_LEN)
    /* module alignment tag (type 6): modules start on page boundaries */
    .short 6, 0
    .long 8
    /* end tag */
    .short 0, 0
    .long 8
mb2_header_end:

/* ---------------------------------------------------------------------------------------- */
.section .boot.text, "ax"
.code32
.global _start
_start:
    cli
    cld
    mov %eax, boot_magic
    mov %ebx, boot_info_addr
    rdtsc
    mov %eax, boot_entry_tsc
    mov %edx, boot_entry_tsc + 4
    mov $__boot_stack_top, %esp

    /* Zero .bss and the boot page tables (the loaders should have, but be sure). The stacks
     * need no zeroing. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    /* Long mode (CPUID 0x80000001 EDX bit 29) is required. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz no_long_mode
    mov %edx, %ebp              /* keep the feature bits: bit 20 = NX */

    /* PML4[0] -> PDPT; PDPT[0..4] -> 4 page directories; 2048 x 2 MiB identity pages. */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    or $0x3, %eax
    xor %ecx, %ecx
1:  mov %eax, boot_pdpt(,%ecx,8)
    add $0x1000, %eax
    inc %ecx
    cmp $4, %ecx
    jne 1b
    mov $0x83, %eax             /* present | writable | 2 MiB */
    xor %ecx, %ecx
2:  mov %eax, boot_pd(,%ecx,8)
    add $0x200000, %eax
    inc %ecx
    cmp $2048, %ecx
    jne 2b

    mov %cr4, %eax
    or $(1 << 5), %eax          /* CR4.PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3

    mov $0xC0000080, %ecx       /* IA32_EFER */
    rdmsr
    or $(1 << 8), %eax          /* LME */
    test $(1 << 20), %ebp
    jz 3f
    or $(1 << 11), %eax         /* NXE, when the CPU has NX */
3:  wrmsr

    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

/* No long mode: say so on COM1 (8N1, 115200) and stop. */
no_long_mode:
    mov $(COM1 + 3), %dx
    mov $0x80, %al
    out %al, %dx                /* DLAB on */
    mov $COM1, %dx
    mov $1, %al
    out %al, %dx                /* divisor 1 = 115200 baud */
    mov $(COM1 + 1), %dx
    xor %al, %al
    out %al, %dx
    mov $(COM1 + 3), %dx
    mov $0x03, %al
    out %al, %dx                /* 8N1, DLAB off */
    mov $msg_no_long_mode, %esi
4:  lodsb
    test %al, %al
    jz 6f
    mov %al, %bl
    mov $(COM1 + 5), %dx
5:  in %dx, %al
    test $0x20, %al
    jz 5b
    mov $COM1, %dx
    mov %bl, %al
    out %al, %dx
    jmp 4b
6:  hlt
    jmp 6b

.code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov $__boot_stack_top, %rsp
    xor %ebp, %ebp
    mov boot_magic(%rip), %edi
    mov boot_info_addr(%rip), %esi
    call mica_main
7:  cli
    hlt
    jmp 7b

/* ---------------------------------------------------------------------------------------- */
.section .rodata.boot, "a"
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF92000000FFFF    /* 0x10: data, DPL 0 */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
msg_no_long_mode:
    .asciz "Mica: this CPU has no 64-bit long mode; stopping.\r\n"

.section .data.boot, "aw"
.balign 8
.global boot_entry_tsc
boot_entry_tsc:
    .quad 0
boot_magic:
    .long 0
boot_info_addr:
    .long 0

.section .bss.boot_tables, "aw", @nobits
.balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4

/*
 * Stacks, each with an unmapped guard page below it (the hypervisor's page tables leave the
 * guard pages out, so an overflow faults instead of corrupting memory).
 */
.macro STACK name, size
.balign 4096
.global \name\()_guard
\name\()_guard:
    .skip 4096
.global \name\()_bottom
\name\()_bottom:
    .skip \size
.global \name\()_top
\name\()_top:
.endm

.section .stacks, "aw", @nobits
STACK boot_stack, 262144
STACK ist_double_fault_stack, 16384
STACK ist_nmi_stack, 16384
STACK ist_machine_check_stack, 16384
STACK ist_exception_stack, 16384
.global __boot_stack_top
.set __boot_stack_top, boot_stack_top
