package org.libchat;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks code that needs more than the Java 8 API Android offers (for one,
 * java.net.http). The build's API check (animal-sniffer against the Java 8
 * signature) skips what carries it; everything else must pass.
 */
@Retention(RetentionPolicy.CLASS)
@Target({ElementType.TYPE, ElementType.METHOD, ElementType.CONSTRUCTOR})
@interface ServerJvmOnly {}
